from nemoflow.cli.app import run

run()
