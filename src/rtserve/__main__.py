"""``python -m rtserve``: the same command line as the ``rtserve`` console script."""

from rtserve.cli.main import main

if __name__ == "__main__":
    main()
