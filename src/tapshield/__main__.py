"""``python -m tapshield`` = the ``tapshield`` command."""

from tapshield.cli import main

main()
