import React from 'react';
import { Global, css } from '@emotion/react';
import styled from '@emotion/styled';
import { Link } from 'react-router-dom';
import { FRAMEWORK } from './shop.js';

// Styled with emotion. In a production build emotion inserts its rules with
// CSSStyleSheet.insertRule ("speedy" mode): its <style data-emotion> elements stay empty, and the
// rules live only in the CSSOM.
const page = css`
  body {
    margin: 0;
    font-family: system-ui, sans-serif;
    background-color: rgb(250, 247, 240);
  }
`;

const Header = styled.header`
  display: flex;
  align-items: center;
  justify-content: space-between;
  padding: 16px 32px;
  background-color: rgb(24, 64, 48);
  color: rgb(255, 255, 255);
`;

const Brand = styled(Link)`
  font-size: 24px;
  font-weight: 700;
  color: rgb(255, 255, 255);
  text-decoration: none;
`;

const Nav = styled.nav`
  display: flex;
  gap: 24px;
  a {
    color: rgb(250, 214, 120);
    font-weight: 600;
  }
`;

const Content = styled.main`
  max-width: 880px;
  margin: 0 auto;
  padding: 24px 32px;
`;

export default function Layout({ children }) {
  return (
    <>
      <Global styles={page} />
      <Header>
        <Brand to="/">{`${FRAMEWORK} shop`}</Brand>
        <Nav>
          <Link to="/">Shop</Link>
          <Link to="/about">About</Link>
        </Nav>
      </Header>
      <Content>{children}</Content>
    </>
  );
}
