"""``python -m service [faust worker options]``: run the scoring worker."""

from service.worker import main

main()
