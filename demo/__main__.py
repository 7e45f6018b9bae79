"""`python -m demo`: Contoso's demo systems (see `demo/contoso.py`)."""

from demo.contoso import main

main()
