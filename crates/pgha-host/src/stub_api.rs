//! For tests: an API on loopback answering one GET route with a fixed JSON document.

/// Serves `GET path` answering `document`; the API's address.
pub(crate) async fn serving<T>(path: &str, document: T) -> String
where
    T: serde::Serialize + Clone + Send + Sync + 'static,
{
    let app = axum::Router::new().route(
        path,
        axum::routing::get(move || {
            let document = document.clone();
            async move { axum::Json(document) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}
