from mbtest.cli import main

main()
