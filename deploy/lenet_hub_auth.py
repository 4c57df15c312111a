"""The class server's authenticator: first-use passwords, and a Unix account per student.

FirstUseAuthenticator alone only records hub users; LocalAuthenticator's create_system_users makes
the hub run ``adduser`` for every listed student who has no account yet (at start-up for the names
in etc/students.txt). jupyterhub_config.py puts this folder on sys.path and names this class.
"""

from firstuseauthenticator import FirstUseAuthenticator
from jupyterhub.auth import LocalAuthenticator


class StudentAuthenticator(LocalAuthenticator, FirstUseAuthenticator):
    """A listed name, the password typed at the first login; a Unix user made by adduser."""
