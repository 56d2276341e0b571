"""The operator's control loops; :mod:`tierra.controllers.manager` starts and stops them."""
