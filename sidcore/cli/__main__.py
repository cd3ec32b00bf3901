"""``python -m sidcore.cli`` = the ``sid`` console script."""

from sidcore.cli import main

main()
