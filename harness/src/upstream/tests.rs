//! The mocks' bad days, over HTTP as the importer meets them: an outage's answers and its end,
//! streams cut every K games, a month served short then whole under a new `ETag`, the bytes
//! counted per month.

use std::time::{Duration, Instant};

use futures_util::StreamExt;

use super::*;

const UA: &str = "importer-test/1 (+https://example.org)";

async fn get(url: &str, if_none_match: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(url).header("user-agent", UA);
    if let Some(tag) = if_none_match {
        req = req.header("if-none-match", tag);
    }
    req.send().await.unwrap()
}

/// The body of a response up to its end or its break, and whether it broke.
async fn read_until_break(resp: reqwest::Response) -> (String, bool) {
    let mut stream = resp.bytes_stream();
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(b) => body.extend_from_slice(&b),
            Err(_) => return (String::from_utf8_lossy(&body).into_owned(), true),
        }
    }
    (String::from_utf8_lossy(&body).into_owned(), false)
}

/// Games whose PGN arrived whole: each ends with its movetext's line, then a blank line.
fn whole_games(pgn: &str) -> usize {
    pgn.matches("\n\n\n").count()
}

#[tokio::test]
async fn an_outage_answers_every_request_as_the_provider_then_ends() {
    let users = [
        MockUser::new("li", Platform::Lichess, 5),
        MockUser::new("cc", Platform::ChessCom, 5),
    ];
    let mocks = Upstreams::start(&users, 1).await.unwrap();
    let origin = Instant::now();
    let lichess = format!("{}/api/games/user/li", mocks.lichess_url());
    let archives = format!("{}/pub/player/cc/games/archives", mocks.chess_com_url());
    mocks.begin_outage(
        Platform::Lichess,
        Outage::lichess_restart(Duration::from_millis(400)),
    );
    mocks.begin_outage(
        Platform::ChessCom,
        Outage::chess_com_down(Duration::from_millis(400)),
    );
    let down = get(&lichess, None).await;
    assert_eq!(down.status(), 502);
    assert!(
        down.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = down.text().await.unwrap();
    assert!(page.contains("<title>lichess.org</title>") && page.contains("We expect to be back very soon"));
    // Anonymous or not, the edge answers the same: the rules are the application's.
    let anonymous = reqwest::Client::new().get(&lichess).send().await.unwrap();
    assert_eq!(anonymous.status(), 502);
    let cc = get(&archives, None).await;
    assert_eq!(cc.status(), 503);
    let said: serde_json::Value = cc.json().await.unwrap();
    assert!(
        said["message"].as_str().unwrap().contains("unavailable"),
        "{said}"
    );
    tokio::time::sleep(Duration::from_millis(450)).await;
    let back = get(&lichess, None).await;
    assert_eq!(back.status(), 200, "the outage ended");
    assert_eq!(whole_games(&back.text().await.unwrap()), 5);
    assert_eq!(get(&archives, None).await.status(), 200);
    let served = mocks.served();
    assert_eq!(served["lichess"].outage_answers, 2);
    assert_eq!(served["lichess"].requests, 3);
    assert_eq!(served["lichess"].rate_limited, 0);
    assert_eq!(served["chess.com"].outage_answers, 1);
    let records = mocks.outages(origin);
    assert_eq!(records.len(), 2);
    let li = records.iter().find(|r| r.provider == Platform::Lichess).unwrap();
    assert_eq!((li.status, li.requests, li.gaps_secs.len()), (502, 2, 1));
    assert!((li.duration_secs - 0.4).abs() < 1e-9);
}

#[tokio::test]
async fn an_outage_breaks_a_stream_in_flight_inside_a_game() {
    let users = [MockUser::new("li", Platform::Lichess, 200)];
    let mocks = Upstreams::start_with(
        &users,
        Options {
            seed: 1,
            lichess_games_per_sec: 100.0,
            ..Options::default()
        },
    )
    .await
    .unwrap();
    let resp = get(&format!("{}/api/games/user/li", mocks.lichess_url()), None).await;
    assert_eq!(resp.status(), 200);
    mocks.schedule_outage(
        Platform::Lichess,
        Duration::from_millis(200),
        Outage::lichess_restart(Duration::from_secs(5)),
    );
    let (pgn, broke) = read_until_break(resp).await;
    assert!(broke, "the restart dropped the stream");
    let whole = whole_games(&pgn);
    assert!((5..100).contains(&whole), "{whole} games before the restart");
    assert_eq!(mocks.served()["lichess"].games_served, whole as u64);
}

#[tokio::test]
async fn cut_every_breaks_every_stream_after_k_games() {
    let users = [MockUser {
        cut_every: Some(10),
        ..MockUser::new("li", Platform::Lichess, 25)
    }];
    // Paced, so that the head leaves before the break (unpaced, hyper drops the connection with
    // the whole answer still in its buffer, and the client sees no response at all).
    let mocks = Upstreams::start_with(
        &users,
        Options {
            seed: 1,
            lichess_games_per_sec: 500.0,
            ..Options::default()
        },
    )
    .await
    .unwrap();
    let url = format!("{}/api/games/user/li", mocks.lichess_url());
    for stream in 1..=3 {
        let (pgn, broke) = read_until_break(get(&url, None).await).await;
        assert!(broke, "stream {stream} broke");
        assert_eq!(whole_games(&pgn), 10, "stream {stream}");
    }
    // A stream of no more than K games ends whole.
    let (pgn, broke) = read_until_break(get(&format!("{url}?max=10"), None).await).await;
    assert!(!broke);
    assert_eq!(whole_games(&pgn), 10);
    assert_eq!(mocks.games_served_to(Platform::Lichess, "LI"), 40);
}

#[tokio::test]
async fn a_month_served_short_comes_whole_to_a_later_request_under_a_new_etag() {
    let user = MockUser {
        months: 3,
        short_months: Some(ShortMonths {
            requests: 1,
            missing: 2,
            months: vec![1],
        }),
        ..MockUser::new("cc", Platform::ChessCom, 30)
    };
    // Month 1 holds games 10..20; the short answer lacks its newest two.
    assert!(user.left_out_when_short(10) && user.left_out_when_short(11));
    assert!(!user.left_out_when_short(12) && !user.left_out_when_short(0));
    let mocks = Upstreams::start(std::slice::from_ref(&user), 1).await.unwrap();
    let (y, m) = games::year_month(1);
    let month = format!("{}/pub/player/cc/games/{y:04}/{m:02}", mocks.chess_com_url());
    let count = |body: &serde_json::Value| body["games"].as_array().map_or(0, Vec::len);
    let short = get(&month, None).await;
    let short_tag = short.headers()["etag"].to_str().unwrap().to_string();
    let short_modified = short.headers()["last-modified"].to_str().unwrap().to_string();
    let short_body = short.bytes().await.unwrap();
    assert_eq!(count(&serde_json::from_slice(&short_body).unwrap()), 8);
    // Asked again with the short answer's ETag: the month changed, so 200 and all of it.
    let whole = get(&month, Some(&short_tag)).await;
    assert_eq!(whole.status(), 200);
    let whole_tag = whole.headers()["etag"].to_str().unwrap().to_string();
    assert_ne!(whole_tag, short_tag);
    assert_ne!(whole.headers()["last-modified"].to_str().unwrap(), short_modified);
    let whole_body = whole.bytes().await.unwrap();
    assert_eq!(count(&serde_json::from_slice(&whole_body).unwrap()), 10);
    assert_eq!(get(&month, Some(&whole_tag)).await.status(), 304);
    // Month 0 is not one of the short months.
    let (y0, m0) = games::year_month(0);
    let newest = format!(
        "{}/pub/player/cc/games/{y0:04}/{m0:02}/pgn",
        mocks.chess_com_url()
    );
    let pgn_bytes = get(&newest, None).await.bytes().await.unwrap().len() as u64;
    let months = mocks.months_served_to("CC");
    assert_eq!(
        months[&(y, m)],
        MonthServed {
            requests: 3,
            short: 1,
            not_modified: 1,
            bytes: (short_body.len() + whole_body.len()) as u64,
        }
    );
    assert_eq!(months[&(y0, m0)].short, 0);
    assert_eq!(mocks.month_bytes_served_to("cc", y0, m0), pgn_bytes);
    assert_eq!(mocks.month_bytes_served_to("cc", 1999, 1), 0);
    assert_eq!(mocks.served()["chess.com"].short_answers, 1);
}
