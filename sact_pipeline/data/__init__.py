"""Package data: the ODS trust extract."""
