from lab.cli.fast import main

main()
