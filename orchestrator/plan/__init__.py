"""Stage 3, plan: turn facts + the chosen profile + user settings into a frozen Plan."""
