"""`python -m flyrecon`."""

from flyrecon.cli import main

main()
