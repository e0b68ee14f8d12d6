from twinvisor.cli.app import main

raise SystemExit(main())
