from infernet.cli import main

main()
