//! How pgha reaches etcd and proves itself to it: TLS, a client certificate, an etcd user.

/// How pgha checks etcd and proves itself to it: TLS with the CA that signed etcd's
/// certificate, a client certificate for etcd's `--client-cert-auth`, and an etcd user for
/// etcd's own authentication (`etcdctl auth enable`).
#[derive(Clone, Default)]
pub struct EtcdAccess {
    /// PEM of the CA that signed etcd's server certificate; with it, endpoints are `https://`.
    pub ca_pem: Option<String>,
    /// PEM certificate and key pgha presents to etcd.
    pub client_identity: Option<(String, String)>,
    /// The etcd user pgha authenticates as.
    pub user: Option<EtcdUser>,
}

impl std::fmt::Debug for EtcdAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdAccess")
            .field("tls", &self.ca_pem.is_some())
            .field("client_identity", &self.client_identity.is_some())
            .field("user", &self.user)
            .finish()
    }
}

/// An etcd user and its password (never printed).
#[derive(Clone, PartialEq, Eq)]
pub struct EtcdUser {
    pub name: String,
    pub password: String,
}

impl std::fmt::Debug for EtcdUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdUser")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
