from seiko.cli import main

main()
