"""Tasks: the trade copier (ids in, one service call each)."""

from celery import shared_task

from signals_in import copier


def fills_booked(*, fills: dict[int, list[int]]) -> None:
    """settings.ORDER_FILL_LISTENERS: called on commit of booked fills (ids by account id); must
    only enqueue work.

    One indexed query: most accounts neither lead nor follow, and this runs on the broker-events path.
    """
    leaders, followers = copier.copier_roles(list(fills))
    for account_id in sorted(leaders):
        mirror_leader_fills_task.delay(account_id, fills[account_id])
    for account_id in sorted(followers):
        follower_fills_booked_task.delay(account_id, fills[account_id])


@shared_task(acks_late=True)
def mirror_leader_fills_task(account_id: int, fill_ids: list[int]) -> None:
    # acks_late is safe: a fill already answered on a link is skipped, and each mirror order has a
    # client id from (link, leader fill), so a redelivery places nothing twice.
    copier.mirror_leader_fills(account_id=account_id, fill_ids=fill_ids)


@shared_task
def follower_fills_booked_task(account_id: int, fill_ids: list[int]) -> None:
    for link_id in copier.record_follower_fills(account_id=account_id, fill_ids=fill_ids):
        check_link_task.delay(link_id)


@shared_task
def check_link_task(link_id: int) -> None:
    copier.check_link(link_id=link_id)


@shared_task
def check_all_followers_task() -> None:
    copier.check_all_links()
