//! The invisible bait link, inserted with lol_html's streaming rewriter.

use std::sync::{Arc, Mutex};

/// The one structural HTML edit: a link appended to `<body>` (or to the
/// document, when it has no body element), by lol_html's streaming rewriter.
pub struct LinkInserter {
    // A Mutex only to make the body Sync, as hyper's boxed bodies must be;
    // it is reached through get_mut, never locked.
    rewriter: Option<Mutex<lol_html::send::HtmlRewriter<'static, Sink>>>,
    out: Arc<Mutex<Vec<u8>>>,
}

/// lol_html's output, shared with the pipeline that drains it.
pub struct Sink(Arc<Mutex<Vec<u8>>>);

impl lol_html::OutputSink for Sink {
    fn handle_chunk(&mut self, chunk: &[u8]) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(chunk);
    }
}

impl LinkInserter {
    /// Appends `html` as the last child of `<body>`.
    pub fn new(html: String) -> LinkInserter {
        use lol_html::html_content::ContentType;
        let out = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (in_body, at_end) = (Arc::clone(&done), done);
        let (html_body, html_end) = (html.clone(), html);
        let settings = lol_html::send::Settings::new_send()
            .append_element_content_handler(lol_html::element!("body", move |el| {
                if !in_body.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    el.append(&html_body, ContentType::Html);
                }
                Ok(())
            }))
            .append_document_content_handler(lol_html::end!(move |end| {
                if !at_end.load(std::sync::atomic::Ordering::Relaxed) {
                    end.append(&html_end, ContentType::Html);
                }
                Ok(())
            }));
        LinkInserter {
            rewriter: Some(Mutex::new(lol_html::send::HtmlRewriter::new(
                settings,
                Sink(Arc::clone(&out)),
            ))),
            out,
        }
    }

    fn drain(&self) -> Vec<u8> {
        std::mem::take(&mut *self.out.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Rewrites one chunk; returns what lol_html has let through so far.
    pub fn push(&mut self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        if let Some(r) = &mut self.rewriter {
            r.get_mut()
                .unwrap_or_else(|e| e.into_inner())
                .write(data)
                .map_err(std::io::Error::other)?;
        }
        Ok(self.drain())
    }

    /// Ends the document.
    pub fn finish(&mut self) -> std::io::Result<Vec<u8>> {
        if let Some(r) = self.rewriter.take() {
            r.into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .end()
                .map_err(std::io::Error::other)?;
        }
        Ok(self.drain())
    }
}
