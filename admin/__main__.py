"""`python -m admin`: the same as the dtadmin console script."""
from admin.cli import main

raise SystemExit(main())
