use utoipa::OpenApi;
fn main() {
    println!(
        "{}",
        kiln_dashboard::api::ApiDoc::openapi()
            .to_pretty_json()
            .unwrap()
    );
}
