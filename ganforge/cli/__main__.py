"""``python -m ganforge.cli``: the same entry point as ``ganforge``."""
from ganforge.cli import main

if __name__ == "__main__":
    main()
