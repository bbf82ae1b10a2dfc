"""Offline tools run by hand or in a child process: the quality gate and the variant maker."""
