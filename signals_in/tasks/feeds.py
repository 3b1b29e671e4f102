"""Tasks: prediction feeds."""

from celery import shared_task

from signals_in import feeds


@shared_task(ignore_result=True)
def poll_due_feeds_task() -> None:
    # Beat, every 5 s; each feed's own interval (and backoff) decides whether it is polled.
    feeds.poll_due_feeds()


@shared_task(ignore_result=True)
def poll_feed_task(feed_id: int) -> None:
    feeds.poll_feed_now(feed_id=feed_id)
