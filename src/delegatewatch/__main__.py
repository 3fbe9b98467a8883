from delegatewatch.cli import main

main()
