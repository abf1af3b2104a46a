from mbtest.cli.app import main

main()
