"""A stand-in for database migrations: a oneshot; web waits for it (migrate:completed)."""

import os
import time

print("applying migrations", flush=True)
time.sleep(0.2)
marker = os.path.join(os.environ.get("TWINVISOR_RUN_DIR", "/tmp"), "migrated")
with open(marker, "w") as f:
    f.write("done\n")
print("migrations applied", flush=True)
