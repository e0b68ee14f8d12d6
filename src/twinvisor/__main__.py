from twinvisor.cli import main

raise SystemExit(main())
