//! Prints the api's OpenAPI document, the same `GET /openapi.json` answers:
//! `cargo run -q -p gateway-api --example openapi > openapi.json`.

fn main() {
    print!("{}", gateway_api::openapi_json());
}
