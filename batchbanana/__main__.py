"""`python -m batchbanana` runs the command line."""

from batchbanana.cli import main

if __name__ == "__main__":
    main()
