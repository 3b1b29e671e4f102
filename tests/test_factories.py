"""Every model's factory builds a valid, saved row (the suite and later issues rely on them)."""

import pytest

from tests import factories

pytestmark = pytest.mark.django_db

FACTORIES = [
    factories.UserFactory,
    factories.StaffFactory,
    factories.FirmFactory,
    factories.ProgramFactory,
    factories.BrokerConnectionFactory,
    factories.InstrumentFactory,
    factories.TradingAccountFactory,
    factories.MembershipFactory,
    factories.OrderFactory,
    factories.OrderEventFactory,
    factories.FillFactory,
    factories.PositionFactory,
    factories.VenueContractFactory,
    factories.VenueAccountFactory,
    factories.ProgramRulesFactory,
    factories.AccountRuleOverrideFactory,
    factories.ContractLimitFactory,
    factories.ScalingTierFactory,
    factories.TradingWindowFactory,
    factories.MarketCloseFactory,
    factories.NewsReleaseFactory,
    factories.AccountRiskStateFactory,
    factories.AccountDayFactory,
    factories.ViolationFactory,
]


@pytest.mark.parametrize("factory", FACTORIES, ids=lambda f: f.__name__)
def test_factory_creates_a_valid_row(factory):
    instance = factory()
    instance.full_clean(exclude=["password"])
    model = factory._meta.model
    assert model.objects.filter(pk=instance.pk).exists()


def test_fill_factory_belongs_to_its_orders_account_and_instrument():
    fill = factories.FillFactory()
    assert (fill.account, fill.instrument) == (fill.order.account, fill.order.instrument)
