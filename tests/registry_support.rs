//! Self-test of `tests/support/registry.rs` against the real components (Debian's
//! docker-registry and skopeo), independent of archctl's own registry client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{
    io::Read,
    time::{Duration, Instant},
};

use support::registry::*;

/// `skopeo inspect --raw` of `reference` (plus extra flags); panics on failure.
#[track_caller]
fn skopeo_raw(reference: &str, extra: &[&str]) -> Vec<u8> {
    let image = format!("docker://{reference}");
    let mut args = vec!["inspect", "--raw", "--tls-verify=false"];
    args.extend_from_slice(extra);
    args.push(&image);
    let o = skopeo(&args);
    assert!(
        o.status.success(),
        "skopeo {args:?}: {}",
        support::shown(&o)
    );
    o.stdout
}

/// `skopeo --override-arch A [--override-variant V] inspect`: the selected image's raw
/// config and the inspect JSON.
#[track_caller]
fn skopeo_for(reference: &str, arch: &str, variant: Option<&str>) -> (Vec<u8>, serde_json::Value) {
    let image = format!("docker://{reference}");
    let mut global = vec!["--override-os", "linux", "--override-arch", arch];
    if let Some(v) = variant {
        global.extend(["--override-variant", v]);
    }
    let run = |extra: &[&str]| {
        let mut args = global.clone();
        args.extend(["inspect", "--tls-verify=false"]);
        args.extend_from_slice(extra);
        args.push(&image);
        let o = skopeo(&args);
        assert!(
            o.status.success(),
            "skopeo {args:?}: {}",
            support::shown(&o)
        );
        o.stdout
    };
    let config = run(&["--config", "--raw"]);
    let json = serde_json::from_slice(&run(&[])).unwrap();
    (config, json)
}

fn assert_auth_failure(o: &impl support::Outcome) {
    let out = o.output();
    assert!(
        !out.status.success(),
        "expected failure: {}",
        support::shown(o)
    );
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(
        err.contains("unauthorized")
            || err.contains("authentication required")
            || err.contains("401"),
        "not an auth failure: {}",
        support::shown(o)
    );
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// GET a manifest by digest with an Accept for `media_type`.
fn get_manifest(reg: &Registry, repo: &str, reference: &str, media_type: &str) -> HttpResponse {
    http_request(
        "GET",
        &format!("{}/v2/{repo}/manifests/{reference}", reg.url()),
        &[("Accept".to_string(), media_type.to_string())],
        &[],
    )
    .unwrap()
}

/// The pushed layer, fetched back, holds exactly the test program as `archctl-test` 0755.
fn check_layer(reg: &Registry, repo: &str, img: &PushedImage) {
    let r = http_get(&format!(
        "{}/v2/{repo}/blobs/{}",
        reg.url(),
        img.layer.digest
    ));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(digest_of(&r.body), img.layer.digest);
    let tar_bytes = gunzip(&r.body).unwrap();
    assert_eq!(digest_of(&tar_bytes), img.layer.diff_id);
    let mut archive = tar::Archive::new(&tar_bytes[..]);
    let mut entries = archive.entries().unwrap();
    let mut e = entries.next().expect("one entry").unwrap();
    assert_eq!(e.path().unwrap().to_str(), Some("archctl-test"));
    assert_eq!(e.header().mode().unwrap(), 0o755);
    assert_eq!(e.header().mtime().unwrap(), 0);
    let mut content = Vec::new();
    e.read_to_end(&mut content).unwrap();
    drop(e);
    assert!(entries.next().is_none(), "exactly one file");
    let target = test_program_target(&img.config_platform).unwrap();
    assert_eq!(content, test_program(target), "{} program", img.platform);

    let config: serde_json::Value = serde_json::from_slice(&img.config).unwrap();
    let mut parts = img.config_platform.split('/');
    assert_eq!(config["os"], parts.next().unwrap());
    assert_eq!(config["architecture"], parts.next().unwrap());
    match parts.next() {
        Some(v) => assert_eq!(config["variant"], v),
        None => assert!(config.get("variant").is_none()),
    }
    assert_eq!(config["rootfs"]["diff_ids"][0], img.layer.diff_id.as_str());
    assert_eq!(config["config"]["Entrypoint"][0], "/archctl-test");
}

#[test]
fn fixtures_round_trip_through_skopeo() {
    let reg = Registry::start(RegistryAuth::None);
    let f = push_fixtures(&reg);
    let all = [
        &f.oci_index,
        &f.docker_list,
        &f.docker_single,
        &f.oci_single,
        &f.attested,
        &f.mismatched,
    ];
    for p in all {
        // skopeo sees exactly the bytes pushed, under the expected digest.
        let raw = skopeo_raw(&p.reference(&reg.addr()), &[]);
        assert_eq!(
            String::from_utf8_lossy(&raw),
            String::from_utf8_lossy(&p.raw),
            "{}",
            p.repo
        );
        assert_eq!(digest_of(&raw), p.digest);
        let top: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(top["mediaType"], p.media_type.as_str());
        // Children by digest, as the registry serves them.
        for img in &p.images {
            let r = get_manifest(&reg, &p.repo, &img.digest, &img.media_type);
            assert_eq!(r.status, 200, "{}: {}", p.repo, r.text());
            assert_eq!(r.body, img.manifest);
            assert_eq!(r.header("content-type"), Some(img.media_type.as_str()));
            assert_eq!(r.header("docker-content-digest"), Some(img.digest.as_str()));
            check_layer(&reg, &p.repo, img);
        }
    }
    assert_eq!(f.oci_index.media_type, OCI_INDEX);
    assert_eq!(f.docker_list.media_type, DOCKER_LIST);
    assert_eq!(f.docker_single.media_type, DOCKER_MANIFEST);
    assert_eq!(f.oci_single.media_type, OCI_MANIFEST);
    assert_eq!(f.oci_index.manifests.len(), INDEX_PLATFORMS.len());

    // Docker list children are schema2 with Docker config/layer types.
    let m: serde_json::Value = serde_json::from_slice(&f.docker_list.images[0].manifest).unwrap();
    assert_eq!(m["config"]["mediaType"], DOCKER_CONFIG);
    assert_eq!(m["layers"][0]["mediaType"], DOCKER_LAYER_GZIP);

    // Attestations: unknown/unknown descriptors pointing at in-toto layers.
    let index: serde_json::Value = serde_json::from_slice(&f.attested.raw).unwrap();
    let descs = index["manifests"].as_array().unwrap();
    assert_eq!(descs.len(), 4);
    for (att, d) in f.attested.attestations.iter().zip(&descs[2..]) {
        assert_eq!(d["platform"]["architecture"], "unknown");
        assert_eq!(d["platform"]["os"], "unknown");
        assert_eq!(d["digest"], att.digest.as_str());
        assert_eq!(
            d["annotations"]["vnd.docker.reference.type"],
            "attestation-manifest"
        );
        assert_eq!(
            d["annotations"]["vnd.docker.reference.digest"],
            att.attests.as_str()
        );
        let r = get_manifest(&reg, "fixtures/attested", &att.digest, OCI_MANIFEST);
        assert_eq!(r.status, 200);
        let am = r.json();
        assert_eq!(am["layers"][0]["mediaType"], IN_TOTO);
        let stmt = http_get(&format!(
            "{}/v2/fixtures/attested/blobs/{}",
            reg.url(),
            att.statement_digest
        ));
        assert_eq!(stmt.status, 200);
        let stmt = stmt.json();
        assert_eq!(
            format!(
                "sha256:{}",
                stmt["subject"][0]["digest"]["sha256"].as_str().unwrap()
            ),
            att.attests
        );
    }
    let attested: Vec<&str> = f
        .attested
        .attestations
        .iter()
        .map(|a| a.attests.as_str())
        .collect();
    assert_eq!(
        attested,
        [
            f.attested.digest_for("linux/amd64"),
            f.attested.digest_for("linux/arm64")
        ]
    );

    // Platform selection by skopeo (containers/image) agrees with the fixtures: the
    // config it picks is the one pushed for that platform. (skopeo 1.9's `Digest` is the
    // top-level digest, not the selected manifest's.)
    let addr = reg.addr();
    let cases: [(&Pushed, &str, Option<&str>, &str); 7] = [
        (&f.oci_index, "arm", Some("v7"), "linux/arm/v7"),
        (&f.oci_index, "arm", Some("v6"), "linux/arm/v6"),
        (&f.oci_index, "s390x", None, "linux/s390x"),
        (&f.oci_index, "386", None, "linux/386"),
        (&f.docker_list, "arm64", None, "linux/arm64/v8"),
        (&f.attested, "arm64", None, "linux/arm64"),
        // The lie: chosen by its descriptor (arm64), its config says amd64.
        (&f.mismatched, "arm64", None, "linux/arm64"),
    ];
    for (p, arch, variant, platform) in cases {
        let (cfg, v) = skopeo_for(&p.reference(&addr), arch, variant);
        assert_eq!(
            String::from_utf8_lossy(&cfg),
            String::from_utf8_lossy(&p.image(platform).config),
            "{} for {arch} {variant:?}",
            p.repo
        );
        assert_eq!(v["Digest"], p.digest.as_str());
        assert_eq!(v["Layers"][0], p.image(platform).layer.digest.as_str());
    }
    let (_, v) = skopeo_for(&f.mismatched.reference(&addr), "arm64", None);
    assert_eq!(v["Architecture"], "amd64");
    let image = format!("docker://{}", f.mismatched.reference(&addr));
    let o = skopeo(&[
        "--override-arch",
        "amd64",
        "inspect",
        "--tls-verify=false",
        &image,
    ]);
    assert!(
        !o.status.success(),
        "no amd64 descriptor: {}",
        support::shown(&o)
    );

    // A full copy (all blobs verified by skopeo) works.
    let dir = tempfile::tempdir().unwrap();
    let dest = format!("dir:{}", dir.path().join("copy").display());
    let src = format!("docker://{}", f.docker_single.reference(&addr));
    let o = skopeo(&["copy", "--src-tls-verify=false", &src, &dest]);
    assert!(o.status.success(), "{}", support::shown(&o));
    let copied = std::fs::read(dir.path().join("copy/manifest.json")).unwrap();
    assert_eq!(copied, f.docker_single.raw);
}

#[test]
fn push_many_is_quick() {
    let reg = Registry::start(RegistryAuth::None);
    let t = Instant::now();
    let pushed = push_many(&reg, 200);
    let took = t.elapsed();
    eprintln!("push_many(200): {took:?}");
    assert_eq!(pushed.len(), 200);
    assert!(took < Duration::from_secs(30), "push_many took {took:?}");
    let digests: std::collections::HashSet<&str> =
        pushed.iter().map(|p| p.digest.as_str()).collect();
    assert_eq!(digests.len(), 200, "each repo has its own image");
    let cat = http_get(&format!("{}/v2/_catalog?n=1000", reg.url())).json();
    let repos = cat["repositories"].as_array().unwrap();
    assert!(repos.len() >= 200, "{} repos", repos.len());
    let last = &pushed[199];
    assert_eq!(last.media_type, OCI_INDEX);
    assert_eq!(skopeo_raw(&last.reference(&reg.addr()), &[]), last.raw);
}

#[test]
fn token_registry() {
    let ts = TokenServer::start(&[("alice", "secret")], &["public/"]);
    let reg = Registry::start(RegistryAuth::Token(&ts));
    let public = push_image(&reg, "public/app", "v1", ImageSpec::oci("linux/amd64"));
    let private = push_image(&reg, "private/app", "v1", ImageSpec::docker("linux/arm64"));
    assert_eq!(
        ts.requests(),
        0,
        "pushing does not involve the token server"
    );

    // The challenge names the token server.
    let r = http_get(&format!("{}/v2/", reg.url()));
    assert_eq!(r.status, 401);
    let challenge = r.header("www-authenticate").unwrap();
    assert!(
        challenge.starts_with(&format!("Bearer realm=\"{}\"", ts.realm()))
            && challenge.contains(&format!("service=\"{TOKEN_SERVICE}\"")),
        "{challenge}"
    );

    // skopeo: anonymous pull of a public repo works.
    let raw = skopeo_raw(&public.reference(&reg.addr()), &["--no-creds"]);
    assert_eq!(raw, public.raw);
    assert!(ts.requests() > 0);
    assert!(ts.log().iter().all(|r| !r.had_auth_header));
    // Private: refused anonymously, allowed with the password, refused with a wrong one.
    let private_ref = format!("docker://{}", private.reference(&reg.addr()));
    let o = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--no-creds",
        &private_ref,
    ]);
    assert_auth_failure(&o);
    let raw = skopeo_raw(
        &private.reference(&reg.addr()),
        &["--creds", "alice:secret"],
    );
    assert_eq!(raw, private.raw);
    let o = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        "alice:wrong",
        &private_ref,
    ]);
    assert!(!o.status.success(), "{}", support::shown(&o));
    let log = ts.log();
    assert!(log.iter().any(|r| r.user.as_deref() == Some("alice")
        && r.granted.iter().any(|g| g == "repository:private/app:pull")));
    assert!(log.iter().any(|r| r.had_auth_header && r.status == 401));
    assert_eq!(ts.count_path("/token"), ts.requests());

    // The token flow by hand.
    let scope = "repository:private/app:pull";
    let url = format!("{}?service={TOKEN_SERVICE}&scope={scope}", ts.realm());
    let anon = http_get(&url).json();
    assert_eq!(anon["token"], anon["access_token"]);
    assert_eq!(anon["expires_in"], 300);
    assert!(anon["issued_at"].as_str().unwrap().ends_with('Z'));
    let claims = jwt_claims(anon["token"].as_str().unwrap());
    assert_eq!(claims["access"], serde_json::json!([]));
    assert_eq!(claims["aud"], TOKEN_SERVICE);
    assert_eq!(claims["iss"], TOKEN_ISSUER);
    let manifest_url = format!("{}/v2/private/app/manifests/v1", reg.url());
    let accept = ("Accept".to_string(), DOCKER_MANIFEST.to_string());
    let bearer = |t: &serde_json::Value| {
        (
            "Authorization".to_string(),
            format!("Bearer {}", t["token"].as_str().unwrap()),
        )
    };
    let r = http_request("GET", &manifest_url, &[bearer(&anon), accept.clone()], &[]).unwrap();
    assert_eq!(r.status, 401, "empty access list is refused");
    let basic = |u: &str, p: &str| {
        use base64::Engine;
        (
            "Authorization".to_string(),
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            ),
        )
    };
    let r = http_request("GET", &url, &[basic("alice", "nope")], &[]).unwrap();
    assert_eq!(r.status, 401);
    let r = http_request("GET", &url, &[basic("alice", "secret")], &[]).unwrap();
    assert_eq!(r.status, 200);
    let tok = r.json();
    let claims = jwt_claims(tok["token"].as_str().unwrap());
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["access"][0]["actions"], serde_json::json!(["pull"]));
    let r = http_request("GET", &manifest_url, &[bearer(&tok), accept], &[]).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, private.raw);

    // Injected token-server failure, then "token server down".
    let mut ts = ts;
    ts.fail_next(1, 503);
    assert_eq!(http_get(&url).status, 503);
    assert_eq!(http_get(&url).status, 200);
    let n = ts.requests();
    ts.stop();
    assert!(
        http_request("GET", &url, &[], &[]).is_err(),
        "refused once stopped"
    );
    assert_eq!(ts.requests(), n);
    let o = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--no-creds",
        &private_ref,
    ]);
    assert!(!o.status.success(), "{}", support::shown(&o));
}

#[test]
fn htpasswd_registry() {
    let reg = Registry::start(RegistryAuth::Htpasswd {
        user: "bob",
        password: "hunter2",
    });
    assert_eq!(
        reg.credentials(),
        Some(("bob".to_string(), "hunter2".to_string()))
    );
    let p = push_image(
        &reg,
        "team/tool",
        "v1",
        ImageSpec::oci_index(&["linux/amd64", "linux/arm/v6"]),
    );
    // distribution 2.8 does Basic auth over plain HTTP.
    let r = http_get(&format!("{}/v2/", reg.url()));
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"archctl-test\"")
    );
    let image = format!("docker://{}", p.reference(&reg.addr()));
    let o = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--no-creds",
        &image,
    ]);
    assert_auth_failure(&o);
    let o = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        "bob:wrong",
        &image,
    ]);
    assert_auth_failure(&o);
    assert_eq!(
        skopeo_raw(&p.reference(&reg.addr()), &["--creds", "bob:hunter2"]),
        p.raw
    );
}

#[test]
fn fault_proxy() {
    let mut reg = Registry::start(RegistryAuth::None);
    let proxy = FaultProxy::start(&reg.addr());
    // Pushing through the proxy: POST, Location, monolithic PUT, manifest PUTs.
    let p = push_image_to(
        &proxy.addr(),
        "via/proxy",
        "v1",
        ImageSpec::oci_index(&["linux/amd64", "linux/arm/v7"]),
    );
    assert!(proxy.count_matching("/blobs/uploads/") >= 4);
    let log = proxy.log();
    assert!(
        log.iter().all(|e| !e.injected
            && e.status
                .is_some_and(|s| s < 300 || (e.method == "HEAD" && s == 404))),
        "{log:?}"
    );
    // skopeo through the proxy.
    assert_eq!(skopeo_raw(&p.reference(&proxy.addr()), &[]), p.raw);

    let layer = p.images[0].layer.clone();
    let blob_url = format!("{}/v2/via/proxy/blobs/{}", proxy.url(), layer.digest);
    let v2 = format!("{}/v2/", proxy.url());
    block_on(async {
        // archctl's reqwest has no default TLS provider (it picks ring); do the same.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let status = |r: reqwest::Response| r.status().as_u16();

        proxy.fail_next(1, 503, None);
        assert_eq!(status(client.get(&v2).send().await.unwrap()), 503);
        assert_eq!(status(client.get(&v2).send().await.unwrap()), 200);

        proxy.fail_next(2, 429, Some(7));
        for _ in 0..2 {
            let r = client.get(&v2).send().await.unwrap();
            assert_eq!(r.status().as_u16(), 429);
            assert_eq!(r.headers()["retry-after"], "7");
        }
        assert_eq!(status(client.get(&v2).send().await.unwrap()), 200);

        // Only matching targets fail.
        proxy.fail_next_matching("/manifests/", 1, 500, None);
        assert_eq!(status(client.get(&v2).send().await.unwrap()), 200);
        let m = format!("{}/v2/via/proxy/manifests/v1", proxy.url());
        let r = client
            .get(&m)
            .header("Accept", OCI_INDEX)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 500);
        let r = client
            .get(&m)
            .header("Accept", OCI_INDEX)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(r.bytes().await.unwrap().as_ref(), p.raw.as_slice());

        // Delay: a short client timeout fires, a long one waits it out.
        proxy.delay(Duration::from_millis(400));
        let t = Instant::now();
        let e = client
            .get(&v2)
            .timeout(Duration::from_millis(150))
            .send()
            .await
            .unwrap_err();
        assert!(e.is_timeout(), "{e:?}");
        assert!(t.elapsed() < Duration::from_millis(390));
        let t = Instant::now();
        assert_eq!(status(client.get(&v2).send().await.unwrap()), 200);
        assert!(t.elapsed() >= Duration::from_millis(400));
        proxy.delay(Duration::ZERO);

        // Reset: the connection closes with no answer.
        proxy.reset_next(1);
        let e = client.get(&v2).send().await.unwrap_err();
        assert!(!e.is_timeout(), "{e:?}");
        assert_eq!(status(client.get(&v2).send().await.unwrap()), 200);

        // Truncate: the head promises the whole blob, half arrives.
        proxy.truncate_next_matching("/blobs/sha256:", 1);
        let r = client.get(&blob_url).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(r.content_length(), Some(layer.gz.len() as u64));
        assert!(r.bytes().await.is_err(), "truncated body is an error");
        let body = client
            .get(&blob_url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(digest_of(&body), layer.digest);
    });
    let injected = proxy.log().iter().filter(|e| e.injected).count();
    assert_eq!(injected, 6, "{:?}", proxy.log());
    assert!(
        proxy
            .requests_log()
            .iter()
            .any(|(m, t)| m == "GET" && t == "/v2/")
    );

    // Upstream down: the proxy answers 502.
    reg.stop();
    assert_eq!(http_get(&v2).status, 502);
}

#[test]
fn corrupt_blob_stop_and_restart() {
    let mut reg = Registry::start(RegistryAuth::None);
    let p = push_image(&reg, "corrupt/me", "v1", ImageSpec::oci("linux/amd64"));
    let layer = p.images[0].layer.clone();
    let path = reg.blob_path(&layer.digest);
    assert_eq!(std::fs::read(&path).unwrap(), layer.gz);

    reg.corrupt_blob(&layer.digest);
    let r = http_get(&format!(
        "{}/v2/corrupt/me/blobs/{}",
        reg.url(),
        layer.digest
    ));
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), layer.gz.len());
    assert_ne!(
        digest_of(&r.body),
        layer.digest,
        "served bytes no longer match"
    );
    let dir = tempfile::tempdir().unwrap();
    let dest = format!("dir:{}", dir.path().join("copy").display());
    let src = format!("docker://{}", p.reference(&reg.addr()));
    let o = skopeo(&["copy", "--src-tls-verify=false", &src, &dest]);
    assert!(!o.status.success(), "{}", support::shown(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .to_lowercase()
            .contains("digest did not match"),
        "{}",
        support::shown(&o)
    );

    // Stop: connections refused; restart: same port, same content.
    reg.stop();
    assert!(!reg.is_running());
    assert!(http_request("GET", &format!("{}/v2/", reg.url()), &[], &[]).is_err());
    reg.restart();
    assert!(reg.is_running());
    let r = get_manifest(&reg, "corrupt/me", "v1", OCI_MANIFEST);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, p.raw);

    // A blob whose data file is gone.
    let config = &p.images[0].config_digest;
    reg.remove_blob_data(config);
    let r = http_get(&format!("{}/v2/corrupt/me/blobs/{config}", reg.url()));
    assert_eq!(r.status, 404, "{}", r.text());
}
