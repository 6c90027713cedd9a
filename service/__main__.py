"""``python -m service [faust worker options]``: run the scoring worker."""

from service.app import main

main()
