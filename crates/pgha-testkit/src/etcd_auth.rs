//! etcd's own authentication turned on for a test: a root user, and a user whose role may read
//! and write below one key prefix only (what an operator gives pgha).

use crate::own_runtime::on_own_thread;
use etcd_client::{Client, Permission};

/// etcd flags that make its tokens JWTs signed with a fresh ECDSA key written into `dir`: a
/// JWT carries the auth store's revision it was issued at, so etcd refuses it once its users
/// or roles change ("revision of auth store is old"), unlike its default simple tokens.
pub fn jwt_tokens(dir: &std::path::Path) -> String {
    let key = rcgen::KeyPair::generate().expect("an ECDSA key");
    let (private, public) = (dir.join("jwt.key"), dir.join("jwt.pub"));
    std::fs::write(&private, key.serialize_pem()).expect("write the JWT key");
    std::fs::write(&public, key.public_key_pem()).expect("write the JWT public key");
    format!(
        "--auth-token=jwt,pub-key={},priv-key={},sign-method=ES256,ttl=10m",
        public.display(),
        private.display()
    )
}

/// The root user's password in the tests.
pub const ROOT_PASSWORD: &str = "root-secret-0815";

/// Turns authentication on at `endpoint` (`http://host:port`): user `root` (password
/// [`ROOT_PASSWORD`]) and `user` with `password`, whose role `user` may read and write keys
/// below `prefix` and nothing else. Panics, saying which step failed, when etcd refuses.
/// Callable from a test's runtime too (it runs its own on a thread of its own).
pub fn enable_auth(endpoint: &str, user: &str, password: &str, prefix: &str) {
    on_own_thread(|| async {
        let mut client = Client::connect([endpoint], None)
            .await
            .unwrap_or_else(|e| panic!("etcd at {endpoint}: {e}"));
        step(
            "user add root",
            client.user_add("root", ROOT_PASSWORD, None).await,
        );
        step("grant root", client.user_grant_role("root", "root").await);
        step("user add", client.user_add(user, password, None).await);
        step("role add", client.role_add(user).await);
        step(
            "grant the prefix",
            client
                .role_grant_permission(user, Permission::read_write(prefix).with_prefix())
                .await,
        );
        step("grant the role", client.user_grant_role(user, user).await);
        step("auth enable", client.auth_enable().await);
    });
}

/// Changes etcd's auth store as an operator would, adding a user `name` (as `root`): every
/// token etcd issued before is refused from then on ("revision of auth store is old").
pub fn add_user(endpoint: &str, name: &str) {
    on_own_thread(|| async {
        let options = etcd_client::ConnectOptions::new().with_user("root", ROOT_PASSWORD);
        let mut root = Client::connect([endpoint], Some(options))
            .await
            .unwrap_or_else(|e| panic!("etcd at {endpoint} as root: {e}"));
        step(
            "user add",
            root.user_add(name, "another-password", None).await,
        );
    });
}

/// The answer of one set-up step, or a panic naming it.
fn step<T>(what: &str, answer: Result<T, etcd_client::Error>) -> T {
    answer.unwrap_or_else(|e| panic!("etcd auth set-up, {what}: {e}"))
}
