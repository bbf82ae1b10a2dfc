"""Launch and supervise the runtime: runners (process, docker), image build, supervisor, state file."""
