"""The playground's static files (`static/`), served by `murano.api.playground`."""
