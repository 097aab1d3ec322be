//! POST /members/NAME/restart: PostgreSQL of a member of this host restarted in place
//! (`pgha restart --in-place`); answers once it runs again.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;

use super::control::MemberChanged;
use super::Answer;
use crate::host::Host;

pub async fn restart_member(
    State(host): State<Arc<Host>>,
    Path(name): Path<String>,
) -> Answer<MemberChanged> {
    host.restart_member(&name).await?;
    Ok(Json(MemberChanged {
        member: name,
        changed: true,
    }))
}
