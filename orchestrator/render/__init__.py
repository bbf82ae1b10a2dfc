"""Stage 4, render: write a Plan as docker-compose, .env, Kubernetes and systemd files."""
