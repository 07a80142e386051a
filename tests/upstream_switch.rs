//! What a reload changes upstream, against the in-process Keystone + Monasca: `Auth::switch`
//! (new credentials: the new token is fetched before the old one is dropped, and a refused
//! switch changes nothing) and `Forwarder::set_upstream` (a new Monasca URL for the next
//! POST, with nothing queued or in flight lost).

mod common;

use common::fake_openstack::{Fake, PASSWORD};
use statsgate::auth::Auth;
use statsgate::batch::Batch;
use statsgate::config::KeystoneConfig;
use statsgate::forward::policy::Backoff;
use statsgate::forward::{ForwardSettings, ForwardStats, Forwarder, Queue};
use statsgate::secret::Secret;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

const ROTATED: &str = "rotated-password-2";

fn keystone(fake: &Fake, password: &str) -> KeystoneConfig {
    KeystoneConfig {
        auth_url: fake.keystone_url(),
        username: "statsgate".into(),
        password: Secret::new(password),
        project_name: "service".into(),
        user_domain_name: "Default".into(),
        project_domain_name: "Default".into(),
        ..KeystoneConfig::default()
    }
}

fn settings(monasca_url: String) -> ForwardSettings {
    ForwardSettings {
        url: monasca_url,
        tenant_id: String::new(),
        delegate_roles: vec!["admin".into()],
        concurrency: 1,
        timeout: Duration::from_secs(10),
        backoff: Backoff {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(200),
        },
    }
}

fn client() -> reqwest::Client {
    statsgate::upstream::client(&[], &[]).unwrap()
}

/// One metric named `name`, as the flusher renders it.
fn batch(name: &str) -> Batch {
    let body = format!(
        r#"[{{"name":"{name}","timestamp":1700000000000,"value":1.0,"dimensions":{{"hostname":"h"}}}}]"#
    );
    Batch {
        body: body.into_bytes().into(),
        metrics: 1,
    }
}

fn stored(fake: &Fake, name: &str) -> usize {
    fake.metrics().iter().filter(|m| m["name"] == name).count()
}

fn last_post_token(fake: &Fake) -> String {
    fake.with(|s| s.post_tokens.last().cloned().unwrap_or_default())
}

/// The password of the last request Keystone got.
fn last_password(fake: &Fake) -> serde_json::Value {
    let last = fake.with(|s| s.auth_requests.last().cloned().unwrap());
    last["auth"]["identity"]["password"]["user"]["password"].clone()
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The fakes run their own runtimes, so they are made (and dropped) outside this one.
fn run<F: Future<Output = ()>>(f: F) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f);
}

struct Rig {
    auth: Arc<Auth>,
    forwarder: Arc<Forwarder>,
    senders: Vec<tokio::task::JoinHandle<()>>,
}

impl Rig {
    /// Auth with `PASSWORD`, one sender POSTing to `monasca_url`.
    fn start(keystone_fake: &Fake, monasca_url: String) -> Rig {
        let auth = Arc::new(Auth::new(client(), keystone(keystone_fake, PASSWORD)));
        let forwarder = Forwarder::new(
            Arc::new(Queue::new(1 << 20)),
            Arc::new(ForwardStats::default()),
            client(),
            Some(Arc::clone(&auth)),
            settings(monasca_url),
            None,
        );
        let senders = forwarder.spawn();
        Rig {
            auth,
            forwarder,
            senders,
        }
    }

    fn send(&self, name: &str) {
        self.forwarder.queue.push(batch(name)).unwrap();
    }

    async fn stop(self) {
        let lost = self
            .forwarder
            .shutdown(self.senders, Instant::now() + Duration::from_secs(5))
            .await;
        assert_eq!(lost, 0);
    }
}

#[test]
fn switching_to_a_password_keystone_accepts_moves_posts_to_the_new_token() {
    let fake = Fake::start();
    run(async {
        let rig = Rig::start(&fake, fake.monasca_url());
        rig.send("before");
        wait_until("the first batch", || stored(&fake, "before") == 1).await;
        let old = last_post_token(&fake);
        assert!(!old.is_empty());

        // Keystone's password is rotated; the old token stays valid until it expires.
        fake.with(|s| s.password = ROTATED.into());
        rig.auth
            .switch(client(), keystone(&fake, ROTATED))
            .await
            .unwrap();
        let new = rig.auth.token().await.unwrap().value.expose().to_owned();
        assert_ne!(new, old, "the switch fetched a token of its own");

        let posts_before = fake.with(|s| s.post_tokens.len());
        rig.send("after");
        wait_until("the second batch", || stored(&fake, "after") == 1).await;
        let since: Vec<String> = fake.with(|s| s.post_tokens[posts_before..].to_vec());
        assert!(
            since.iter().all(|t| *t == new),
            "every POST after the switch carries the new token"
        );
        assert_eq!(rig.auth.renewals.load(Relaxed), 2);
        assert_eq!(rig.auth.failures.load(Relaxed), 0);
        let auth = Arc::clone(&rig.auth);
        rig.stop().await;

        // Renewals use the new identity: with the old token gone, the next one comes from
        // the rotated password (the old one is refused now).
        auth.invalidate(&auth.token().await.unwrap()).await;
        auth.token().await.unwrap();
        assert_eq!(last_password(&fake), ROTATED);
    });
}

#[test]
fn a_refused_switch_keeps_the_old_identity_and_names_no_secret() {
    let fake = Fake::start();
    run(async {
        let rig = Rig::start(&fake, fake.monasca_url());
        rig.send("before");
        wait_until("the first batch", || stored(&fake, "before") == 1).await;
        let old = last_post_token(&fake);

        let wrong = "wrong-secret-never-printed";
        let e = rig
            .auth
            .switch(client(), keystone(&fake, wrong))
            .await
            .unwrap_err();
        assert!(e.is_refusal(), "{e}");
        let text = e.to_string();
        assert!(!text.contains(wrong) && !format!("{e:?}").contains(wrong));
        assert!(text.contains(&fake.keystone_url()), "names the URL: {text}");
        assert!(text.contains("Keystone refused the credentials (HTTP 401)"));
        assert_eq!(rig.auth.failures.load(Relaxed), 1);

        assert_eq!(rig.auth.token().await.unwrap().value.expose(), old);
        rig.send("after");
        wait_until("the second batch", || stored(&fake, "after") == 1).await;
        assert_eq!(last_post_token(&fake), old, "the old token still posts");

        // A renewal still authenticates as before.
        let auth = Arc::clone(&rig.auth);
        rig.stop().await;
        auth.invalidate(&auth.token().await.unwrap()).await;
        assert_ne!(auth.token().await.unwrap().value.expose(), old);
        assert_eq!(last_password(&fake), PASSWORD);
    });
}

#[test]
fn senders_keep_the_old_token_while_the_switch_waits_on_keystone() {
    let fake = Fake::start();
    run(async {
        let rig = Rig::start(&fake, fake.monasca_url());
        rig.send("before");
        wait_until("the first batch", || stored(&fake, "before") == 1).await;
        let old = last_post_token(&fake);

        let hold = Arc::new(tokio::sync::Semaphore::new(0));
        fake.with(|s| {
            s.password = ROTATED.into();
            s.faults.keystone_hold = Some(Arc::clone(&hold));
        });
        let (auth, config) = (Arc::clone(&rig.auth), keystone(&fake, ROTATED));
        let switch = tokio::spawn(async move { auth.switch(client(), config).await });
        wait_until("the switch's request at Keystone", || {
            fake.with(|s| s.auth_arrivals) == 2
        })
        .await;

        // Keystone has not answered the switch yet: batches still go, with the old token.
        rig.send("during");
        wait_until("the batch sent during the switch", || {
            stored(&fake, "during") == 1
        })
        .await;
        assert!(!switch.is_finished());
        assert_eq!(last_post_token(&fake), old);

        hold.add_permits(1);
        switch.await.unwrap().unwrap();
        rig.send("after");
        wait_until("the batch after the switch", || stored(&fake, "after") == 1).await;
        let new = last_post_token(&fake);
        assert_ne!(new, old);
        fake.with(|s| {
            assert!(
                s.post_tokens.iter().all(|t| *t == old || *t == new),
                "no POST without a valid token: {:?}",
                s.post_tokens.len()
            );
            assert_eq!(s.tokens_issued, 2);
        });
        assert_eq!(
            rig.forwarder.stats.reauthentications.load(Relaxed),
            0,
            "no 401 on the way"
        );
        rig.stop().await;
    });
}

#[test]
fn set_upstream_sends_the_next_batch_to_the_new_monasca_and_finishes_the_one_in_flight() {
    let fake = Fake::start();
    let other = Fake::start_monasca_for(&fake);
    // The old Monasca holds its answer, so that a POST is in flight when the URL changes.
    let hold = Arc::new(tokio::sync::Semaphore::new(0));
    fake.with(|s| s.faults.monasca_hold = Some(Arc::clone(&hold)));
    run(async {
        let rig = Rig::start(&fake, fake.monasca_url());
        rig.send("in_flight");
        rig.send("queued");
        wait_until("the first POST at the old Monasca", || {
            fake.with(|s| s.post_arrivals) == 1
        })
        .await;
        rig.forwarder
            .set_upstream(client(), settings(other.monasca_url()));
        hold.add_permits(1);

        wait_until("the queued batch at the new Monasca", || {
            stored(&other, "queued") == 1
        })
        .await;
        wait_until("the in-flight batch at the old one", || {
            stored(&fake, "in_flight") == 1
        })
        .await;
        rig.send("later");
        wait_until("a later batch at the new Monasca", || {
            stored(&other, "later") == 1
        })
        .await;
        assert_eq!(
            fake.with(|s| s.posts),
            1,
            "nothing else went to the old URL"
        );
        assert_eq!(
            stored(&other, "in_flight"),
            0,
            "the in-flight batch was sent once"
        );
        let stats = &rig.forwarder.stats;
        assert_eq!(stats.batches_sent.load(Relaxed), 3);
        assert_eq!(stats.retries.load(Relaxed), 0);
        rig.stop().await;
    });
}

#[test]
fn a_batch_retrying_against_a_failing_monasca_is_delivered_to_the_new_one() {
    let fake = Fake::start();
    let other = Fake::start_monasca_for(&fake);
    fake.with(|s| s.faults.monasca_500 = true);
    run(async {
        let rig = Rig::start(&fake, fake.monasca_url());
        rig.send("stuck");
        wait_until("a retry at the failing Monasca", || {
            fake.with(|s| s.posts) >= 2
        })
        .await;
        rig.forwarder
            .set_upstream(client(), settings(other.monasca_url()));
        wait_until("the batch at the new Monasca", || {
            stored(&other, "stuck") == 1
        })
        .await;
        assert_eq!(stored(&fake, "stuck"), 0);
        let stats = &rig.forwarder.stats;
        assert_eq!(stats.batches_sent.load(Relaxed), 1);
        assert!(stats.retries.load(Relaxed) >= 1);
        assert_eq!(rig.forwarder.queue.len(), 0);
        rig.stop().await;
    });
}
