from authnode.cli import main

main()
