//! The Keystone v3 wire format: the `POST /v3/auth/tokens` request for each identity and
//! the parts of the token body statsgate reads.

use crate::config::KeystoneConfig;
use serde::Deserialize;
use serde_json::{Value, json};

/// The identity section of the request, plus a project scope for passwords (an application
/// credential is already bound to its project and must not carry a scope).
pub fn request_body(k: &KeystoneConfig) -> Value {
    if !k.application_credential_id.is_empty() {
        return json!({"auth": {"identity": {
            "methods": ["application_credential"],
            "application_credential": {
                "id": k.application_credential_id,
                "secret": k.application_credential_secret.expose(),
            }
        }}});
    }
    let mut user = json!({"password": k.password.expose()});
    if k.user_id.is_empty() {
        user["name"] = json!(k.username);
        user["domain"] = domain(&k.user_domain_id, &k.user_domain_name);
    } else {
        user["id"] = json!(k.user_id);
    }
    let project = if k.project_id.is_empty() {
        json!({"name": k.project_name, "domain": domain(&k.project_domain_id, &k.project_domain_name)})
    } else {
        json!({"id": k.project_id})
    };
    json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": user}},
        "scope": {"project": project}
    }})
}

/// By id, else by name; the `default` domain when neither is set (as the openstack CLI).
fn domain(id: &str, name: &str) -> Value {
    match (id.is_empty(), name.is_empty()) {
        (false, _) => json!({"id": id}),
        (true, false) => json!({"name": name}),
        (true, true) => json!({"id": "default"}),
    }
}

#[derive(Debug, Deserialize)]
pub struct TokenBody {
    pub token: TokenInfo,
}

#[derive(Debug, Deserialize)]
pub struct TokenInfo {
    pub expires_at: String,
    #[serde(default)]
    pub issued_at: Option<String>,
    #[serde(default)]
    pub roles: Vec<Named>,
    #[serde(default)]
    pub project: Option<Named>,
    #[serde(default)]
    pub catalog: Vec<Service>,
}

#[derive(Debug, Deserialize)]
pub struct Named {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Deserialize)]
pub struct Service {
    #[serde(rename = "type")]
    pub service_type: String,
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
}

#[derive(Debug, Deserialize)]
pub struct Endpoint {
    pub interface: String,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub region_id: Option<String>,
    pub url: String,
}

/// The URL of the first `service_type` endpoint with this interface (and region, if given).
pub fn find_endpoint(
    catalog: &[Service],
    service_type: &str,
    interface: &str,
    region: &str,
) -> Option<String> {
    catalog
        .iter()
        .filter(|s| s.service_type == service_type)
        .flat_map(|s| &s.endpoints)
        .find_map(|e| {
            let region_ok = region.is_empty()
                || e.region.as_deref() == Some(region)
                || e.region_id.as_deref() == Some(region);
            (e.interface == interface && region_ok).then(|| e.url.clone())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn password_config() -> KeystoneConfig {
        KeystoneConfig {
            auth_url: "http://ks/v3".into(),
            username: "statsgate".into(),
            password: Secret::new("pw"),
            project_name: "service".into(),
            project_domain_name: "Default".into(),
            ..KeystoneConfig::default()
        }
    }

    #[test]
    fn password_identity_with_project_scope() {
        let body = request_body(&password_config());
        let user = &body["auth"]["identity"]["password"]["user"];
        assert_eq!(user["name"], "statsgate");
        assert_eq!(user["password"], "pw");
        assert_eq!(user["domain"], json!({"id": "default"}));
        assert_eq!(
            body["auth"]["scope"]["project"],
            json!({"name": "service", "domain": {"name": "Default"}})
        );

        let mut by_id = password_config();
        by_id.user_id = "u-1".into();
        by_id.project_id = "p-1".into();
        let body = request_body(&by_id);
        assert_eq!(
            body["auth"]["identity"]["password"]["user"],
            json!({"id": "u-1", "password": "pw"})
        );
        assert_eq!(body["auth"]["scope"]["project"], json!({"id": "p-1"}));
    }

    #[test]
    fn application_credential_has_no_scope() {
        let k = KeystoneConfig {
            application_credential_id: "ac".into(),
            application_credential_secret: Secret::new("s"),
            ..password_config()
        };
        let body = request_body(&k);
        assert_eq!(
            body["auth"]["identity"]["application_credential"],
            json!({"id": "ac", "secret": "s"})
        );
        assert!(body["auth"].get("scope").is_none());
    }

    #[test]
    fn catalog_lookup_by_type_interface_and_region() {
        let body: TokenBody = serde_json::from_value(json!({"token": {
            "expires_at": "2026-11-21T22:27:11.000000Z",
            "catalog": [
                {"type": "identity", "endpoints": [{"interface": "public", "region": "RegionOne", "url": "http://ks/v3"}]},
                {"type": "monitoring", "endpoints": [
                    {"interface": "internal", "region": "RegionOne", "url": "http://internal:8070/v2.0"},
                    {"interface": "public", "region": "RegionTwo", "url": "http://two:8070/v2.0"},
                    {"interface": "public", "region": "RegionOne", "url": "http://one:8070/v2.0"}
                ]}
            ]
        }}))
        .unwrap();
        let c = &body.token.catalog;
        assert_eq!(
            find_endpoint(c, "monitoring", "public", "RegionOne").as_deref(),
            Some("http://one:8070/v2.0")
        );
        assert_eq!(
            find_endpoint(c, "monitoring", "public", "").as_deref(),
            Some("http://two:8070/v2.0")
        );
        assert_eq!(
            find_endpoint(c, "monitoring", "internal", "").as_deref(),
            Some("http://internal:8070/v2.0")
        );
        assert_eq!(find_endpoint(c, "monitoring", "admin", ""), None);
    }
}
