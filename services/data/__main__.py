from services.data.server import main

main()
