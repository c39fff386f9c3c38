//! `GET /v1/activity`: the tenant's recent actions, redemptions and
//! messages per time bucket (what the console's overview charts).

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::TenantAuth;
use super::{ApiError, AppState};
use crate::wire::Query;
use engage_domain::activity::{self, Activity, Window};
use engage_store::ids::now_ms;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_activity))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ActivityQuery {
    /// `hour` (5-minute buckets) or `day` (1-hour buckets, the default).
    window: Option<Window>,
}

#[utoipa::path(
    get,
    path = "/v1/activity",
    operation_id = "getActivity",
    tag = "operations",
    summary = "Recent actions, redemptions and messages per time bucket",
    description = "Counted from the records themselves, newest first, reading at most 20,000 of each kind: when a kind has more in the window, `capped` is true and its counts are lower bounds.",
    security(("tenantToken" = [])),
    params(ActivityQuery),
    responses(
        (status = 200, description = "The tenant's activity", body = Activity),
    ),
)]
async fn get_activity(
    TenantAuth(tenant): TenantAuth,
    State(s): State<AppState>,
    Query(q): Query<ActivityQuery>,
) -> Result<Json<Activity>, ApiError> {
    let window = q.window.unwrap_or(Window::Day);
    Ok(Json(activity::activity(
        &s.store.read()?,
        &tenant,
        window,
        now_ms(),
    )?))
}
