"""PyTensor's set-up and compile modes (`backend`) and the graph rewrites they add (`rewrites`):
shared by the fit (`fit/`) and the posterior predictive (`posterior/`, `api`), below both."""
