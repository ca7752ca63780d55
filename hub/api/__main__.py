from ai4lab.api.app import main

main()
