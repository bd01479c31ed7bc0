"""The HTTP service: JSON API, live event stream, report store and the web page."""
