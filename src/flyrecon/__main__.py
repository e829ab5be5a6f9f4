"""`python -m flyrecon`."""

from flyrecon.entry import main

main()
