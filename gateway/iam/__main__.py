from gateway.iam.server import main

main()
