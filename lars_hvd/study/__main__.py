"""python -m lars_hvd.study"""

from lars_hvd.study.sweep import main

main()
