//! Rendering of the webhook commands' answers and of outbox events.

use std::io::Write;

use super::{clean, csv_line, fit, json_value, when};
use crate::admin::EventsResponse;
use crate::cli::args::Output;
use crate::events::Event;
use crate::store::DeliveryRecord;
use crate::webhooks::{EndpointView, WebhookResponse};

/// A webhook command's answer.
pub(super) fn write(
    r: &WebhookResponse,
    output: Output,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    match (output, r) {
        // `webhook add -o json`: exactly what a script needs to set its receiver up.
        (Output::Json, WebhookResponse::Added { endpoint, secret }) => json_value(
            out,
            &serde_json::json!({"id": endpoint.id, "url": endpoint.url, "secret": secret.0}),
        ),
        (
            Output::Json,
            WebhookResponse::Rotated {
                endpoint,
                secret,
                previous_until,
            },
        ) => json_value(
            out,
            &serde_json::json!({"id": endpoint.id, "url": endpoint.url, "secret": secret.0,
                "previous_secret_until": previous_until}),
        ),
        (Output::Json, WebhookResponse::Endpoints { endpoints }) => json_value(out, endpoints),
        (Output::Json, WebhookResponse::Deliveries { deliveries, .. }) => {
            json_value(out, deliveries)
        }
        (Output::Json, _) => json_value(out, r),
        (Output::Csv, WebhookResponse::Endpoints { endpoints }) => {
            writeln!(
                out,
                "id,url,events,enabled,disabledReason,deliveredThrough,failures,nextAttempt"
            )?;
            for e in endpoints {
                csv_line(
                    out,
                    &[
                        e.id.clone(),
                        e.url.clone(),
                        e.events.0.join(" "),
                        e.enabled.to_string(),
                        e.disabled_reason.clone().unwrap_or_default(),
                        e.delivered_through.to_string(),
                        e.failures.to_string(),
                        e.next_attempt.map(|t| t.to_rfc3339()).unwrap_or_default(),
                    ],
                )?;
            }
            Ok(())
        }
        (Output::Csv, WebhookResponse::Deliveries { deliveries, .. }) => {
            writeln!(out, "time,eventId,seq,type,attempt,status,latencyMs,error")?;
            for d in deliveries {
                csv_line(
                    out,
                    &[
                        d.time.to_rfc3339(),
                        d.event_id.clone(),
                        d.seq.to_string(),
                        d.event_type.to_string(),
                        d.attempt.to_string(),
                        d.status.map(|s| s.to_string()).unwrap_or_default(),
                        d.latency_ms.to_string(),
                        d.error.clone().unwrap_or_default(),
                    ],
                )?;
            }
            Ok(())
        }
        _ => text(r, out),
    }
}

fn filter(e: &EndpointView) -> String {
    if e.events.0.is_empty() {
        "all".into()
    } else {
        e.events.0.join(",")
    }
}

fn endpoint_lines(out: &mut dyn Write, e: &EndpointView) -> std::io::Result<()> {
    writeln!(out, "  id:          {}", e.id)?;
    writeln!(out, "  url:         {}", clean(&e.url))?;
    writeln!(out, "  events:      {}", filter(e))?;
    if let Some(d) = &e.description {
        writeln!(out, "  description: {}", clean(d))?;
    }
    match (&e.enabled, &e.disabled_reason) {
        (true, _) => writeln!(out, "  state:       enabled")?,
        (false, r) => writeln!(
            out,
            "  state:       disabled ({}, {})",
            clean(r.as_deref().unwrap_or("no reason recorded")),
            when(e.disabled_at)
        )?,
    }
    writeln!(out, "  delivered:   through seq {}", e.delivered_through)?;
    if e.failures > 0 {
        writeln!(
            out,
            "  retrying:    {} failed attempts, next at {}",
            e.failures,
            when(e.next_attempt)
        )?;
    }
    if let Some(t) = e.previous_secret_until {
        writeln!(
            out,
            "  old secret:  signs beside the new one until {}",
            when(Some(t))
        )?;
    }
    Ok(())
}

fn delivery_line(out: &mut dyn Write, d: &DeliveryRecord) -> std::io::Result<()> {
    let status = d
        .status
        .map(|s| s.to_string())
        .unwrap_or_else(|| "-".into());
    writeln!(
        out,
        "{:<16} {:>8} {} {:>3} {:>4} {:>6} {}",
        when(Some(d.time)),
        d.seq,
        fit(d.event_type.as_str(), 24),
        d.attempt,
        status,
        format!("{}ms", d.latency_ms),
        clean(d.error.as_deref().unwrap_or("ok"))
    )
}

fn text(r: &WebhookResponse, out: &mut dyn Write) -> std::io::Result<()> {
    match r {
        WebhookResponse::Added { endpoint, secret } => {
            writeln!(out, "Webhook endpoint {} added:", endpoint.id)?;
            endpoint_lines(out, endpoint)?;
            writeln!(out)?;
            writeln!(out, "  secret:      {}", secret.0)?;
            writeln!(out)?;
            writeln!(
                out,
                "The secret is shown only this once: give it to the receiver, which verifies each delivery's webhook-signature with it."
            )?;
            writeln!(
                out,
                "It receives the events committed from now on; `retrac-sync webhook replay {} --since TIME` sends older ones.",
                endpoint.id
            )
        }
        WebhookResponse::Endpoints { endpoints } => {
            if endpoints.is_empty() {
                return writeln!(
                    out,
                    "no webhook endpoints (add one with `retrac-sync webhook add URL`)"
                );
            }
            for (i, e) in endpoints.iter().enumerate() {
                if i > 0 {
                    writeln!(out)?;
                }
                endpoint_lines(out, e)?;
            }
            let enabled = endpoints.iter().filter(|e| e.enabled).count();
            writeln!(out, "{} endpoints, {enabled} enabled", endpoints.len())
        }
        WebhookResponse::Endpoint {
            action,
            endpoint,
            note,
        } => {
            writeln!(out, "Webhook endpoint {} {action}.", endpoint.id)?;
            if action != "removed" {
                endpoint_lines(out, endpoint)?;
            }
            match note {
                Some(n) => writeln!(out, "{}", clean(n)),
                None => Ok(()),
            }
        }
        WebhookResponse::Rotated {
            endpoint,
            secret,
            previous_until,
        } => {
            writeln!(out, "New secret for webhook endpoint {}:", endpoint.id)?;
            writeln!(out)?;
            writeln!(out, "  {}", secret.0)?;
            writeln!(out)?;
            writeln!(
                out,
                "It is shown only this once. Deliveries carry signatures by both the new and the old secret until {}; give the receiver the new one before then.",
                when(Some(*previous_until))
            )
        }
        WebhookResponse::Tested { id, delivery } => {
            let ok = delivery.error.is_none();
            writeln!(
                out,
                "webhook.test to {id}: {} ({} ms{})",
                if ok { "delivered" } else { "FAILED" },
                delivery.latency_ms,
                delivery
                    .status
                    .map(|s| format!(", status {s}"))
                    .unwrap_or_default()
            )?;
            if let Some(e) = &delivery.error {
                writeln!(out, "  error:  {}", clean(e))?;
            }
            if !delivery.response.is_empty() {
                writeln!(out, "  answer: {}", clean(&delivery.response))?;
            }
            Ok(())
        }
        WebhookResponse::Deliveries { id, deliveries } => {
            if deliveries.is_empty() {
                return writeln!(out, "no delivery attempts to {id} yet");
            }
            writeln!(
                out,
                "The last {} attempts to {id}, newest first:",
                deliveries.len()
            )?;
            writeln!(
                out,
                "{:<16} {:>8} {:<24} {:>3} {:>4} {:>6} RESULT",
                "TIME", "SEQ", "TYPE", "TRY", "HTTP", "TOOK"
            )?;
            for d in deliveries {
                delivery_line(out, d)?;
            }
            Ok(())
        }
    }
}

/// Whether the answer to `events list` has a CSV form.
pub(super) fn events(
    r: &EventsResponse,
    output: Output,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    match output {
        Output::Json => json_value(out, &r.events),
        Output::Csv => {
            writeln!(out, "seq,id,type,timestamp,actor")?;
            for e in &r.events {
                csv_line(
                    out,
                    &[
                        e.seq.to_string(),
                        e.id.clone(),
                        e.event_type.to_string(),
                        e.timestamp.to_rfc3339(),
                        e.data["actor"].as_str().unwrap_or_default().to_string(),
                    ],
                )?;
            }
            Ok(())
        }
        Output::Table => {
            if r.events.is_empty() {
                return writeln!(
                    out,
                    "no events after that (last seq {}, oldest kept {})",
                    r.last_seq,
                    r.oldest_seq
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "none".into())
                );
            }
            for e in &r.events {
                event_line(out, e, Output::Table)?;
            }
            Ok(())
        }
    }
}

/// One event as `events tail` prints it: a line of text, or one JSON object a line.
pub fn event_line(out: &mut dyn Write, e: &Event, output: Output) -> std::io::Result<()> {
    if output == Output::Json {
        let line = serde_json::to_string(e).map_err(std::io::Error::other)?;
        return writeln!(out, "{line}");
    }
    let who = e.data["member"]["userName"]
        .as_str()
        .or_else(|| e.data["token"]["label"].as_str())
        .unwrap_or("");
    writeln!(
        out,
        "{:>8} {} {:<24} {} {}",
        e.seq,
        e.timestamp.format("%Y-%m-%dT%H:%M:%SZ"),
        e.event_type.as_str(),
        clean(who),
        clean(e.data["actor"].as_str().unwrap_or(""))
    )
}
