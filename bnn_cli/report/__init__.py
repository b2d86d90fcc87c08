"""Reporting: the metrics of a predictive (`metrics`), the report's sections and its md/html
rendering (`render`, `fit_report`), its figures (`plots`, `fit_plots`), `bnn compare`
(`compare`) and the tables every command prints (`tables`)."""
