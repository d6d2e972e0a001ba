from services.scheduler.agent.main import main

main()
