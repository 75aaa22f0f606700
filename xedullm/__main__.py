"""`python -m xedullm` runs the `xedullm` command."""
from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
