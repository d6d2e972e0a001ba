from services.monitor.server import main

main()
