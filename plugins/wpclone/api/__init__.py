"""The jobs API mounted in Airflow's API server (``app``) and what it reads from Airflow (``runs``)."""
