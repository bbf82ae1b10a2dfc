"""Stage 5, launch: the LaunchSpec and the runners that start it (process, docker), image build."""
